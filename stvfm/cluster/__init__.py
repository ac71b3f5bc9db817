"""The Ray cluster the library runs on: which Ray to join (a private local one unless an address is configured), a
bounded-time ``ray.init``, the environment every Ray process gets, a free loopback port. Used by Ray Train
(:mod:`stvfm.training.ray_train`), the batch forecasts on Ray Data (:mod:`stvfm.serving.batch`) and Ray Tune
(``tune/``).
"""
