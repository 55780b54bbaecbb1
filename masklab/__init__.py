"""masklab: what does masking or noising the input do to a model?"""

__version__ = "0.1.0"
