"""validate layer: static checks of any Triton model repository, with file:line:col for every problem.

Errors are what Triton's core and backends refuse at load time (its exact wording where it has one);
warnings are what Triton accepts but is likely a mistake.
"""

from __future__ import annotations

from tritonkit.validate._api import validate_repository, validate_tree, validate_view
from tritonkit.validate._k8s import validate_k8s_files, validate_k8s_folder
from tritonkit.validate._report import Report
from tritonkit.validate._view import DiskRepository, MappingRepository, RepositoryView

__all__ = [
    "DiskRepository",
    "MappingRepository",
    "Report",
    "RepositoryView",
    "validate_k8s_files",
    "validate_k8s_folder",
    "validate_repository",
    "validate_tree",
    "validate_view",
]
