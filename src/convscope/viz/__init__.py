"""Pictures: architecture diagrams, learned filters, feature maps and training curves.

Every function returns a matplotlib :class:`~matplotlib.figure.Figure` built without pyplot
(an Agg canvas: no display needed, nothing global changed), so it shows in a notebook and
saves with ``fig.savefig(path)``. The architecture diagram is also available as plain SVG
text (:func:`architecture_svg`). Every picture has a title and labelled axes or layers.
"""
from .architecture import architecture, architecture_svg, save_architecture
from .curves import curves, read_history
from .featuremaps import featuremaps
from .filters import filters
from .files import save_figure

__all__ = ["architecture", "architecture_svg", "save_architecture", "filters", "featuremaps",
           "curves", "read_history", "save_figure"]
