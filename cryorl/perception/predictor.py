"""The hole-quality predictor: a registry backbone, preprocessing, training, evaluation, batched prediction.

CTFMaxRes targets are clipped to [0, 20] Å (failed fits count as 20 Å, as in the environment's features).
``target="regression"`` regresses it (smooth L1 or L2, as CryoRL); ``target="bins"`` classifies it into CTF bins
and predicts the expected value. Saved as ``model.pt`` (a state dict, loaded with ``weights_only=True``) and
``config.json``.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cryorl.atlas import MAX_FEATURE_CTF, clip_ctf
from cryorl.fileio import NotWeightsError, atomic_path, atomic_write_text, load_weights
from cryorl.perception.registry import create_model, model_entry
from cryorl.perception.robust import Attack, perturb

__all__ = ["HoleQualityPredictor", "quality_metrics", "DEFAULT_BINS"]

DEFAULT_BINS = (3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 13.0, 16.0)


def quality_metrics(predicted: np.ndarray, ctf: np.ndarray, threshold: float = 6.0) -> dict[str, float]:
    """MAE, Pearson r, Spearman ρ (on CTFMaxRes clipped to 20 Å), and accuracy, precision and recall of
    "≤ threshold"."""
    from scipy.stats import pearsonr, spearmanr

    truth = clip_ctf(ctf)
    predicted = np.asarray(predicted, float)
    good, called = truth <= threshold, predicted <= threshold
    tp = float((good & called).sum())
    varied = predicted.std() > 0 and truth.std() > 0                  # correlation undefined for a constant
    return {"mae": float(np.abs(predicted - truth).mean()),
            "pearson_r": float(pearsonr(predicted, truth)[0]) if varied else float("nan"),
            "spearman_rho": float(spearmanr(predicted, truth)[0]) if varied else float("nan"),
            "accuracy": float((good == called).mean()),
            "precision": tp / max(float(called.sum()), 1.0), "recall": tp / max(float(good.sum()), 1.0),
            "holes": int(len(truth))}


class HoleQualityPredictor:
    """CTFMaxRes from a hole's low-magnification crop."""

    def __init__(self, backbone: str = "resnet10_small", *, target: str = "regression", loss: str = "smooth_l1",
                 bins: tuple[float, ...] = DEFAULT_BINS, input_size: int = 96, overrides: dict | None = None
                 ) -> None:
        if target not in ("regression", "bins"):
            raise ValueError(f"target must be 'regression' or 'bins', got {target!r}")
        if loss not in ("smooth_l1", "l2"):
            raise ValueError(f"loss must be 'smooth_l1' or 'l2', got {loss!r}")
        self.config = {"backbone": backbone, "target": target, "loss": loss, "bins": list(bins),
                       "input_size": input_size, "overrides": dict(overrides or {})}
        outputs = 1 if target == "regression" else len(bins) + 1
        self.movies = model_entry(backbone).takes_movies
        self.model = create_model(backbone, in_chans=1, num_outputs=outputs, **self.config["overrides"])
        edges = np.asarray(bins, float)
        self.bin_centres = torch.tensor(np.concatenate([[edges[0] - 0.5], (edges[1:] + edges[:-1]) / 2,
                                                     [(edges[-1] + MAX_FEATURE_CTF) / 2]]), dtype=torch.float32)

    @property
    def name(self) -> str:
        return self.config["backbone"]

    # -- data --------------------------------------------------------------------------------------------------
    def preprocess(self, crops: np.ndarray) -> torch.Tensor:
        """(N, H, W) images — or (N, T, H, W) movies for a temporal backbone — of any dtype (MRC counts or
        8-bit) → float32 (N, 1, S, S) or (N, T, 1, S, S), each sample normalised to zero mean and unit variance,
        centre-cropped or resized to the input size."""
        crops = np.asarray(crops)
        dims = 4 if self.movies else 3
        if crops.ndim == dims - 1:
            crops = crops[None]
        if crops.ndim != dims:
            raise ValueError(f"crops must be {'(N, T, H, W) movies' if self.movies else '(N, H, W) images'}, "
                             f"got shape {crops.shape}")
        x = torch.as_tensor(crops.astype(np.float32)).unsqueeze(-3)
        axes = tuple(range(1, x.ndim))
        x = (x - x.mean(dim=axes, keepdim=True)) / (x.std(dim=axes, keepdim=True) + 1e-6)
        return self.window(x).contiguous()

    def window(self, x: torch.Tensor) -> torch.Tensor:
        """The model's view of (…, H, W) images: the centre input-size window, or the image resized to it."""
        size = self.config["input_size"]
        h, w = x.shape[-2:]
        if h >= size and w >= size:
            top, left = (h - size) // 2, (w - size) // 2
            x = x[..., top:top + size, left:left + size]
        if x.shape[-2:] != (size, size):
            lead = x.shape[:-2]
            x = F.interpolate(x.reshape(-1, 1, *x.shape[-2:]), size=(size, size), mode="bilinear",
                              align_corners=False).reshape(*lead, size, size)
        return x

    @staticmethod
    def targets(ctf: np.ndarray) -> np.ndarray:
        return clip_ctf(ctf)

    # -- training ----------------------------------------------------------------------------------------------
    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of model ``output`` against CTFMaxRes ``y`` (Å, clipped): smooth L1 / L2 on the
        scaled CTFMaxRes, or cross-entropy over the CTF bins."""
        if self.config["target"] == "bins":
            classes = torch.bucketize(y, torch.tensor(self.config["bins"], dtype=y.dtype), right=True)
            return F.cross_entropy(output, classes)
        scaled = output[:, 0]
        target = y / MAX_FEATURE_CTF
        return F.smooth_l1_loss(scaled, target, beta=0.05) if self.config["loss"] == "smooth_l1" else \
            F.mse_loss(scaled, target)

    def _decode(self, output: torch.Tensor) -> torch.Tensor:
        if self.config["target"] == "bins":
            return torch.softmax(output, dim=1) @ self.bin_centres
        return output[:, 0].clamp(0.0, 1.0) * MAX_FEATURE_CTF

    def fit(self, crops: np.ndarray, ctf: np.ndarray, *, validation: tuple[np.ndarray, np.ndarray] | None = None,
            epochs: int = 10, batch_size: int = 64, lr: float = 2e-3, weight_decay: float = 1e-4,
            augment: bool = True, seed: int = 0, progress: bool = True, adversarial: Attack | None = None,
            **options) -> pd.DataFrame:
        """Train with AdamW and a one-cycle schedule; with ``validation``, keep the weights of the epoch with the
        lowest validation MAE. ``adversarial``: min-max training, each batch replaced by its perturbation under
        that attack (:mod:`cryorl.perception.robust`). ``options`` go to
        :func:`cryorl.perception.training.train`: ``lr_scaling``, ``warmup``, ``accumulate`` (of the
        :class:`~cryorl.perception.training.Schedule`), ``semi`` and ``unlabelled`` (semi-supervised),
        ``checkpoint``/``resume``, ``compression`` (distributed). Returns one row per epoch (loss, validation
        metrics, seconds)."""
        from cryorl.perception.training import Schedule, train

        schedule_keys = {"lr_scaling", "base_batch", "warmup", "accumulate"}
        schedule = Schedule(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                            **{k: v for k, v in options.items() if k in schedule_keys})
        return train(self, crops, ctf, validation=validation, schedule=schedule, augment=augment, seed=seed,
                     progress=progress, adversarial=adversarial,
                     **{k: v for k, v in options.items() if k not in schedule_keys})

    # -- inference ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, crops: np.ndarray, batch_size: int = 256, progress: bool = False) -> np.ndarray:
        """Predicted CTFMaxRes (Å) for each crop, in batches."""
        from tqdm import tqdm

        self.model.eval()
        device = next(self.model.parameters()).device
        crops = np.asarray(crops)
        out = []
        for start in tqdm(range(0, len(crops), batch_size), desc="predicting", unit="batch", disable=not progress):
            output = self.model(self.preprocess(crops[start:start + batch_size]).to(device))
            out.append(self._decode(output.cpu()))
        return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)

    def evaluate(self, crops: np.ndarray, ctf: np.ndarray, threshold: float = 6.0) -> dict[str, float]:
        return quality_metrics(self.predict(crops), ctf, threshold)

    def evaluate_attacked(self, crops: np.ndarray, ctf: np.ndarray, attack: Attack, threshold: float = 6.0,
                          batch_size: int = 128, seed: int = 0) -> dict[str, float]:
        """The metrics of :meth:`evaluate` on crops perturbed by ``attack`` against their true CTFMaxRes."""
        generator = torch.Generator().manual_seed(seed)
        x_all = self.preprocess(crops)
        y_all = torch.as_tensor(self.targets(ctf), dtype=torch.float32)
        predicted = []
        for start in range(0, len(x_all), batch_size):
            x = perturb(self.model, self.loss, x_all[start:start + batch_size], y_all[start:start + batch_size],
                        attack, generator)
            with torch.no_grad():
                self.model.eval()
                predicted.append(self._decode(self.model(x)).numpy())
        return quality_metrics(np.concatenate(predicted), ctf, threshold)

    # -- files -------------------------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike, metadata: dict | None = None) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "model.pt") as tmp:
            torch.save(self.model.state_dict(), tmp)
        atomic_write_text(folder / "config.json", json.dumps({**self.config, "metadata": metadata or {}},
                                                             indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> HoleQualityPredictor:
        folder = Path(folder)
        try:
            config = json.loads((folder / "config.json").read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no predictor in {folder} (config.json missing)") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{folder / 'config.json'}: not valid JSON ({error.msg})") from None
        predictor = cls(config["backbone"], target=config["target"], loss=config["loss"],
                        bins=tuple(config["bins"]), input_size=config["input_size"], overrides=config["overrides"])
        try:
            state = load_weights(folder / "model.pt")
            predictor.model.load_state_dict(state)
        except NotWeightsError:
            raise
        except FileNotFoundError:
            raise FileNotFoundError(f"no weights in {folder} (model.pt missing)") from None
        except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
            raise ValueError(f"{folder / 'model.pt'}: cannot load the weights ({str(error).splitlines()[0]})") \
                from None
        predictor.metadata = config.get("metadata", {})
        return predictor
