"""What calls the functions: API Gateway's HTTP front, SQS event source mappings, EventBridge execution rules."""
