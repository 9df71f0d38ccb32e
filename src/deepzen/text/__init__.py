"""Text models and tasks: classification, sequence labeling, language models, seq2seq, decoding."""
