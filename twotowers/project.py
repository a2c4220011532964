"""What the project is and where it lives: read by the package metadata (pyproject.toml), the model card
(`hub/card.py`) and `PyTorchModelHubMixin` (the `repo_url` of every card `push_to_hub` writes).

Change the URL here when the repository moves; a test checks that pyproject.toml agrees.
"""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/twotowers/twotowers"
DOCS_URL = f"{PROJECT_URL}#readme"
INSTALL = f'pip install "twotowers @ git+{PROJECT_URL}"'
