"""Scene recognition next to place recognition: the pipeline around the unified model.

The model itself is :class:`panoplace.models.scene.ScenePlaceModel` (shared base, scene
branch, place branch). This package runs it on image files and trains its scene head:

- :mod:`~panoplace.scene.categories`: category lists (``categories_places365.txt``) and where
  the Places365 weights are;
- :mod:`~panoplace.scene.predict`: top-k scene categories (CSV) and place descriptors (the
  store of ``panoplace extract``) of images, one network pass (``panoplace scene predict``);
- :mod:`~panoplace.scene.train`: fine-tuning the scene head on an ImageFolder-style folder or a
  dataset CSV with scene labels, validation accuracy, confusion matrix (``panoplace scene train``);
- :mod:`~panoplace.scene.world`: the offline default on the procedural world (scene head on the
  world's labels) and the demo's scene block.

Scene-aware re-ranking of retrieval candidates is :mod:`panoplace.matching.scene_rerank`.
"""

from panoplace.scene.categories import describe_categories, find_places365, load_categories, missing_places365_error
from panoplace.scene.predict import (
    ScenePredictions,
    predict_images,
    read_scene_csv,
    scene_probs_from_csv,
    top_k,
    write_scene_csv,
)
from panoplace.scene.train import (
    HeadFit,
    LabelledImages,
    SceneTrainResult,
    compute_scene_features,
    confusion_matrix,
    fit_scene_head,
    head_probabilities,
    image_folder,
    labelled_csv,
    load_labelled,
    plot_confusion,
    split_labelled,
    train_scene,
)
from panoplace.scene.world import (
    WORLD_CATEGORIES,
    WorldSceneHead,
    demo_scene_block,
    predict_scenes,
    scene_accuracy,
    scene_labels,
    scene_localisation,
    top_k_matches,
    train_world_scene_head,
    world_scene_model,
)

__all__ = [
    "HeadFit",
    "LabelledImages",
    "ScenePredictions",
    "SceneTrainResult",
    "WORLD_CATEGORIES",
    "WorldSceneHead",
    "compute_scene_features",
    "confusion_matrix",
    "demo_scene_block",
    "describe_categories",
    "find_places365",
    "fit_scene_head",
    "head_probabilities",
    "image_folder",
    "labelled_csv",
    "load_categories",
    "load_labelled",
    "missing_places365_error",
    "plot_confusion",
    "predict_images",
    "predict_scenes",
    "read_scene_csv",
    "scene_accuracy",
    "scene_labels",
    "scene_localisation",
    "scene_probs_from_csv",
    "split_labelled",
    "top_k",
    "top_k_matches",
    "train_scene",
    "train_world_scene_head",
    "world_scene_model",
    "write_scene_csv",
]
