"""MLflow "models from code" entry point of every ST-VFM model version (logged as the pyfunc's ``python_model``).

It only imports the pyfunc class from the *installed* ``stvfm`` package; the version's weights and config are
tensors + JSON (``artifacts/``), never pickles.
"""

import mlflow

from stvfm.serving.pyfunc import STVFMPyfunc

mlflow.models.set_model(STVFMPyfunc())
