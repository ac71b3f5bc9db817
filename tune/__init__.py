"""Ray Tune study over λ, cross-prompt layers, backbone and lr (`python -m tune.run --dataset synthetic`); see
docs/tune.md."""
