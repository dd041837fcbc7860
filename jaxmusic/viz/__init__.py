"""Pictures and the HTML report.

* :mod:`jaxmusic.viz.show`    ``jaxmusic show``: spectrograms of two clips (mel, chroma,
  full and beat-synchronised) and the class histograms before/after the merge
  (lab steps 1-2).
* :mod:`jaxmusic.viz.curves`  training curves of a run (``curves.png``).
* :mod:`jaxmusic.viz.latent`  ``jaxmusic embed``: the vector before the output layer of
  every clip, mapped to 2-D by PCA, t-SNE and UMAP (lab step 10).
* :mod:`jaxmusic.viz.report`  ``jaxmusic report``: one self-contained HTML page.

Figures are drawn with matplotlib's Agg backend; nothing here needs a display.
"""


def use_agg():
    """Import pyplot on the Agg backend (no display, same pixels everywhere)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
