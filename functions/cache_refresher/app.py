"""Cache refresher Lambda: the feed stream keeps the Redis home feeds current."""

from ripple.container import get_container
from ripple.stream_processing import lambda_stream_handler

handler = lambda_stream_handler(get_container().cache_refresher.handle)
