"""Package data: the shipped model weights.

The weights live in the checkout's top-level ``models/`` folder (the design card keeps them there); the build
(``setup.py``'s ``build_py``) copies ``models/*.pt`` into this package of the wheel, so a normal ``pip install .``
ships them. ``sarreg.model.weights.default_weights_path`` looks here first (``importlib.resources``) and then in
the checkout (source runs and editable installs, where this folder holds no weights).
"""
