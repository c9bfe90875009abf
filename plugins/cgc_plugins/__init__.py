"""The built-in components of cgc-framework.

Each subpackage is an ordinary pluggy plugin, registered through the ``cgc_framework`` entry-point
group in the project's ``pyproject.toml`` exactly as a third-party distribution registers one.
"""
