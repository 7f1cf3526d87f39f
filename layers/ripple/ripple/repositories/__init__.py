"""Data access: the only place that knows DynamoDB (through PynamoDB models)."""
