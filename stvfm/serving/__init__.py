"""Online serving: the MLflow pyfunc behind ``mlflow models serve -m models:/stvfm-<ds>@champion``.

``pyfunc.py`` holds :class:`STVFMPyfunc` (loads the version's config.json + weights.safetensors with the installed
package); ``mlflow_model.py`` is the "models from code" file logged with every version (it only imports the class
from the installed package and hands it to ``mlflow.models.set_model``).
"""
