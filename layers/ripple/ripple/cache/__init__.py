"""Redis caches: derived data only, always rebuildable from DynamoDB."""
