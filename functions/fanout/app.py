"""Fan-out Lambda: the posts and follows streams become feed items in DynamoDB."""

from ripple.container import get_container
from ripple.stream_processing import lambda_stream_handler

handler = lambda_stream_handler(get_container().fanout_consumer.handle)
