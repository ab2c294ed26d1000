"""The vector store: Milvus Lite (embedded) or a Milvus server, behind one interface (``vector_store``)."""
