"""Ripple's local stack: template.yaml brought up on an AWS emulator, Redis and in-process Lambdas.

Nothing here runs in AWS. The local stack exists because neither moto nor LocalStack can run
Lambda code or event source mappings without Docker (see /work/shared/README.md), so Ripple
reads its own template and plays the parts AWS would: tables, queues, secrets, environment,
the API and the DynamoDB stream pollers.
"""

__all__: list[str] = []
