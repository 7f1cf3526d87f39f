"""Fan-out Lambda: the posts, follows and fan-out jobs streams become feed items in DynamoDB,
a stream batch at a time (``ripple.services.fanout.FanoutBatch``)."""

from ripple.container import get_container
from ripple.stream_processing import lambda_stream_handler

handler = lambda_stream_handler(open_batch=get_container().fanout_consumer.open_batch)
