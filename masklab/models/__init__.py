"""Models: a closed table of small networks (models/registry.py, no torch) and their
modules (mlp, cnn, vit, bert on one encoder); models/build.py builds the one a spec names."""
