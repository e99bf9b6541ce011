"""Stage 04's trained models as stages 05 and 06 load them: through 04's models.json and each
model's family, every file checked against 04's manifest."""
from __future__ import annotations

from musicrec import families
from musicrec.manifest import StageRun, stage_dir
from musicrec.models.base import Model
from musicrec.outputs.train import ModelsManifest

TRAIN_STAGE = "04_train"


def load_trained(st: StageRun, names: list[str] | None = None) -> tuple[ModelsManifest, dict[str, Model]]:
    """04's models manifest and the models it lists (only `names`, in that order, where given)."""
    manifest = ModelsManifest.read(st.input(TRAIN_STAGE, "models.json"))
    chosen = list(manifest.models) if names is None else [n for n in names if n in manifest.models]
    models = {}
    for name in chosen:
        entry = manifest.models[name]
        for f in entry.files:
            st.input(TRAIN_STAGE, f)
        models[name] = families.load_model(entry.family, stage_dir(st.cfg, TRAIN_STAGE), entry.origin)
    return manifest, models
