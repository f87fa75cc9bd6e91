"""Making and measuring models: photo packs (``data``), training (``train``), evaluation
(``evaluate``) and foreign weights (``importers``).  Built on ``tint.api`` and ``tint.core``;
independent of ``tint.media``.

    from tint.training import TrainConfig, train, EvalConfig, evaluate_weights
    train(TrainConfig(["photos/"], output="runs/a", backbone="tiny-darknet", steps=1000))
    report = evaluate_weights(EvalConfig("dev/", weights="runs/a/final.safetensors"))
"""
from .evaluate import EvalConfig, evaluate_weights
from .train import TrainConfig, train

__all__ = ["EvalConfig", "TrainConfig", "evaluate_weights", "train"]
