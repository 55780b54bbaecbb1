"""The ids every part of masklab agrees on, in one leaf: the tokenizer's special tokens
(data/tokenize.py writes them, ops/word_pieces.py and models/bert.py read them) and the kinds
of a masked-modeling token (ops/tokens.py draws them, models/vit.py acts on them)."""

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # the first ids of every vocabulary, in this order
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = 0, 1, 2, 3, 4
N_SPECIAL = len(SPECIAL_TOKENS)

MLM_MASK, MLM_RANDOM, MLM_KEEP = 0, 1, 2  # BERT's 80/10/10: [MASK], a random token, unchanged
