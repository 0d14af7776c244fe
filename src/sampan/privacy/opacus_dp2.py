"""DP2 for parties that bring a PyTorch model: Opacus DP-SGD (optional extra `pip install 'sampan[torch]'`).

Same contract as `dp_sgd_train`: flat float64 parameters in and out, so FedAvg, DP3, the wire and the
ledger are unchanged; Poisson sampling with rate q = batch_size / n, per-example clipping to
`max_grad_norm` and Gaussian noise of std noise_multiplier·max_grad_norm on the sum, divided by the
expected batch size (Opacus's semantics match Sampan's). The privacy cost is charged by Sampan's
ledger from the returned (steps, q, noise multiplier); Opacus's own accountant is not consulted.

Randomness: Opacus's secure mode needs `torchcsprng`, which is not available on these machines, so
sampling and noise come from a torch generator seeded from the OS CSPRNG for every call (not from the
run seed); this is weaker than a CSPRNG stream and is stated in the receipt of runs that use it.
torch and opacus are imported only inside this module.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from sampan.models.local_training import TrainConfig, TrainResult
from sampan.privacy.dpsgd import DPSGDConfig, DPSGDResult, planned_steps


def module_to_vector(module: Any) -> np.ndarray:
    """A torch module's parameters as one float64 vector (the wire and the strategies' format)."""
    import torch

    with torch.no_grad():
        return torch.nn.utils.parameters_to_vector(module.parameters()).double().cpu().numpy()


def vector_to_module(module: Any, vector: np.ndarray) -> None:
    import torch

    expected = sum(p.numel() for p in module.parameters())
    if vector.shape != (expected,):
        raise ValueError(f"the torch model has {expected} parameters, the vector has shape {vector.shape}")
    first = next(module.parameters())
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.as_tensor(vector, dtype=first.dtype, device=first.device),
                                            module.parameters())


def opacus_dp_sgd_train(module: Any, params: np.ndarray, X: np.ndarray, y: np.ndarray, config: TrainConfig,
                        dp: DPSGDConfig) -> DPSGDResult:
    """Train `module` (outputs one logit per row) from `params` with Opacus DP-SGD; returns new params."""
    import torch
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    if config.optimizer != "sgd" or config.proximal_mu:
        raise ValueError("the Opacus path supports plain/momentum SGD with L2 only (no Adam, no FedProx)")
    n = len(X)
    steps, q = planned_steps(n, config, dp)
    torch.manual_seed(secrets.randbits(63))
    vector_to_module(module, np.asarray(params, dtype=np.float64))
    dataset = TensorDataset(torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32))
    loader = DataLoader(dataset, batch_size=max(1, int(round(q * n))))
    optimizer = torch.optim.SGD(module.parameters(), lr=config.learning_rate, momentum=config.momentum,
                                weight_decay=config.l2)
    engine = PrivacyEngine(accountant="rdp")
    private_module, optimizer, loader = engine.make_private(
        module=module, optimizer=optimizer, data_loader=loader, noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm, poisson_sampling=True)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    done = sampled = 0
    loss_sum = 0.0
    while done < steps:
        for xb, yb in loader:
            optimizer.zero_grad()
            if len(xb):
                loss = loss_fn(private_module(xb).reshape(-1), yb)
                loss.backward()
                loss_sum += float(loss.detach()) * len(xb)
                sampled += len(xb)
            optimizer.step()
            done += 1
            if done == steps:
                break
    new_params = module_to_vector(module)
    result = TrainResult(params=new_params, mean_loss=loss_sum / max(sampled, 1), steps=steps, examples=sampled)
    return DPSGDResult(result, steps, q, dp.noise_multiplier, clipped_fraction=float("nan"))
