"""The paper's analyses on profiles (plain arrays): responsiveness and top neurons,
optimal inputs, hierarchical clustering with silhouette scores (docs/method.md §1.6–1.8)."""

from gradnap.analysis.clustering import (
    ClusterCut,
    LayerClustering,
    SilhouetteTable,
    cluster_layers,
    cluster_profiles,
    silhouette,
    silhouette_table,
)
from gradnap.analysis.listening import ListeningSummary, listening_summary
from gradnap.analysis.optimal_input import (
    OptimalInput,
    optimal_input,
    optimal_input_for_profile,
    optimal_input_unsupported,
)
from gradnap.analysis.responsiveness import responsiveness, top_neurons

__all__ = [
    "ClusterCut",
    "LayerClustering",
    "ListeningSummary",
    "OptimalInput",
    "SilhouetteTable",
    "cluster_layers",
    "cluster_profiles",
    "listening_summary",
    "optimal_input",
    "optimal_input_for_profile",
    "optimal_input_unsupported",
    "responsiveness",
    "silhouette",
    "silhouette_table",
    "top_neurons",
]
