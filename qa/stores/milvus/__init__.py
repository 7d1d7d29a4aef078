"""A Milvus collection as a store: `targets`, `filters` (expressions), `schema`, `lexical` (BM25), `writer`, `store`."""
