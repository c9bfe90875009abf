"""What-if plugin: a compound at several doses -> the predicted response of a cell.

Contributes the ``predict`` command (``cgc predict``, ``cgc-predict``) through the
``register_commands`` hook, exactly as a third-party plugin adds a command. Python API:
:class:`~cgc_plugins.whatif.predictor.WhatIf` and :func:`~cgc_plugins.whatif.predictor.predict_response`
(``docs/predict.md``).
"""

from cgc_framework.plugin import hookimpl


@hookimpl
def register_commands(register):
    register("predict", "cgc_plugins.whatif.command:main",
             description="in-silico what-if: predicted change of every cell feature under a compound at "
                         "several doses, dose-response and nearest known compounds")
