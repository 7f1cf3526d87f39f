"""Cache refresher Lambda: the feed, posts and likes streams keep Redis current, a whole
stream batch per pipelined round trip."""

from ripple.container import get_container
from ripple.stream_processing import lambda_stream_handler

handler = lambda_stream_handler(open_batch=get_container().cache_refresher.open_batch)
