"""Shared pieces of the weak-platform tests: German credit as TableData splits, a byte-capturing TCP relay."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from sampan.data import load_german_credit
from sampan.verify.api import TableData

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


class German:
    """German credit (1000 rows, 63 encoded features) with an id column and a 0/1 label, split by row sets."""

    def __init__(self) -> None:
        if not (SHARED / "german_credit").is_dir():
            pytest.skip("shared public datasets (../shared/data) not found")
        data = load_german_credit(SHARED / "german_credit")
        assert data.y is not None
        self.X, self.y, self.ids = data.X, data.y.astype(int), [str(i) for i in data.ids]
        self.features = list(data.feature_names)
        self.order = np.random.default_rng(16).permutation(len(self.y))  # fixed: a reproducible test split

    def table(self, rows: np.ndarray, features: list[str] | None = None, *, ids: bool = False,
              label: bool = True) -> TableData:
        cols = features if features is not None else self.features
        idx = [self.features.index(c) for c in cols]
        header = (["id"] if ids else []) + cols + (["label"] if label else [])
        body = [([self.ids[i]] if ids else []) + [float(v) for v in self.X[i, idx]] + ([int(self.y[i])] if label
                                                                                         else [])
                for i in rows]
        return TableData(columns=header, rows=body)


class Relay:
    """A TCP relay on 127.0.0.1 that keeps every byte each way (a stand-in for the verifier's proxy)."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.up = bytearray()  # party -> platform
        self.down = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, server, self.up), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, self.down), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, into: bytearray) -> None:
        try:
            while chunk := src.recv(65536):
                with self._lock:
                    into += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()
