"""Sphinx configuration of the tfcompress site (``make docs``; strict: ``-W -n``, every warning fails)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # this checkout's packages, whatever is installed
sys.path.insert(0, os.path.join(HERE, "_ext"))

from tfcompress._version import __version__  # noqa: E402

project = "tfcompress"
author = "the tfcompress authors"
copyright = "the tfcompress authors, Apache License 2.0"  # noqa: A001 - Sphinx's name
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
    "myst_parser",
    "tfdocs",
]

highlight_language = "none"  # an unlabelled block (a printed table) is text, not Python
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "**/__pycache__"]
nitpicky = True  # a cross-reference to nothing is an error, not plain text
default_role = "literal"  # `0.8` in a docstring is code, as the Google style means it
# "more than one target" for a builtin name in a signature (`bytes`) when a class has an attribute of that name.
suppress_warnings = ["ref.python"]

# Google-style docstrings (Args:, Returns:, Raises:, Example:).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = [("Example", "example")]

autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False
python_use_unqualified_type_names = True

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Offline: furo ships its CSS/JS and uses the system font stack; no CDN, no web fonts, no analytics.
html_theme = "furo"
html_title = f"tfcompress {version}"
html_static_path = ["_static"]
html_css_files = ["tfcompress.css"]
html_show_sourcelink = False
html_copy_source = False
html_theme_options = {"navigation_with_keys": True}

# ``Raises: error: ...`` in tflite_export._userfiles names the exception class its caller passes in.
nitpick_ignore = [("py:exc", "error")]
