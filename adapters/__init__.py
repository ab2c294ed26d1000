"""One small adapter per external thing: the CLIP encoder, the vector store, the metadata store."""
