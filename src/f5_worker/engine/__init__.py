"""F5-TTS synthesis: the model, the vocoder and the attention backend the bootstrap chose."""
