"""Where an index keeps its passages: the store interface (`base`) and its two implementations (`faiss`, `milvus`)."""
