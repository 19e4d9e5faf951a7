"""The functions' CloudWatch logs (:mod:`~lambdacov.cloudwatch.logs`) and alarms
(:mod:`~lambdacov.cloudwatch.alarms`)."""
