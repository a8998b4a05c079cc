"""cellbook: deep learning for cell identity, three papers re-implemented and checked.

The handful of names notebooks use::

    import cellbook as cb
    ch = cb.open_chapter(globals(), data="bmmc")   # a notebook's first call: parameters, seed, recorder, data
    cb.seed_everything(0); dev = cb.resolve_device("auto")
    adata = cb.datasets.load_scrna("vangalen2019")
    trainer = cb.Trainer(model, max_epochs=10).fit(X, y)
    cb.metrics.classification(y_true, y_pred)
    rec = cb.Recorder(profile=profile, device=device, seed=seed); ...; rec.save()
"""
from . import baselines, datasets, metrics, plots, preprocess, results  # noqa: F401
from .preprocess import scrna as _scrna  # noqa: F401
from .config import profile_parameters, resolve_device, seed_everything  # noqa: F401
from .results import Recorder  # noqa: F401
from .chapter import Chapter, open_chapter  # noqa: F401
from .train import Trainer, count_parameters, train_autoencoder, train_classifier_autoencoder  # noqa: F401
from . import splits  # noqa: F401,E402
from .annotate import CellTypeClassifier, annotate  # noqa: F401,E402  (cb.annotate is the function)
from . import claims, comparison, parallel, sweeps  # noqa: F401,E402
from .parallel import map_tasks  # noqa: F401,E402

__version__ = "0.1.0"
