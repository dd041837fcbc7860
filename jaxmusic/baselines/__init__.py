"""Classic machine-learning baselines on handcrafted per-clip features
(the list: :mod:`jaxmusic.features.handcrafted`).

* :mod:`jaxmusic.baselines.table`        a lab set -> one feature row per clip (cached)
* :mod:`jaxmusic.baselines.models`       scikit-learn pipelines, XGBoost, LightGBM
* :mod:`jaxmusic.baselines.experiment`   seeds, search, voting; run directories and reports

The command line is ``jaxmusic baselines`` (:mod:`jaxmusic.cli.baselines`).
"""
