"""Detection of AI-forged loan documents (issue 18), trained across banks without sharing their documents.

A document image is cut into patches (`slicer`), each patch's fingerprint is extracted (`fingerprint`: the noise
residual and its spectral traces, after Corvi et al., CVPR Workshops 2023), a patch model scores each patch from 0 to
1 (higher = more likely real; `scorer`), the patch scores are aggregated into an image score (`aggregate`) and a
threshold fixed on real validation images at a stated false-positive rate decides (`threshold`, `detector`). Banks
train the patch model together through the horizontal workflow (`federated`): each bank's documents and their patch
features stay in the bank's folder; only the workflow's messages cross. The honest test data are made locally
(`documents`, `generators`, `capture`): no public forgery corpus is used, and the figures hold for these proxies only.

Above the runtime layer because `federated` starts runs through `sampan.runtime.runner`; the image parts themselves
use only NumPy, SciPy and Pillow (imported where used).

May import: anything below it (sampan.runtime and the layers under it).
"""
