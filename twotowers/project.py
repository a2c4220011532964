"""What the project is and where it lives: read by the package metadata (pyproject.toml), the model card
(`hub/card.py`) and `PyTorchModelHubMixin` (the `repo_url` of every card `push_to_hub` writes).

Change the URL here when the repository moves; a test checks that pyproject.toml agrees.
"""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/twotowers/twotowers"
DOCS_URL = f"{PROJECT_URL}#readme"
INSTALL = f'pip install "twotowers @ git+{PROJECT_URL}"'
# PyTorch's own index of CPU builds: PyPI's Linux torch is the CUDA build, several GB with its nvidia-* wheels.
# pip takes the highest version across its indexes, and `2.13.0+cpu` sorts above PyPI's `2.13.0`.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
INSTALL_CPU = f"{INSTALL} --extra-index-url {TORCH_CPU_INDEX}"
