"""The FAISS index folder as a store: recipes (`ann`), files and lock (`generations`), `search`, `writer`, `store`."""
