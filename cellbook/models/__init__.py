"""Models: plain ``torch.nn.Module``s built from explicit arguments; no training code inside.

One module per family: ``mlp``, ``cnn1d``, ``recurrent``, ``ensemble`` (Part I),
``vision`` (Part II), ``autoencoder`` (Part III).
"""
