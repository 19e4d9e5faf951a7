# The lambdacov layer and variables on a Lambda function, declaratively.
# Publish the layer first (lambdacov publish-layer) and pass its ARN.

variable "lambdacov_layer_arn" {
  description = "arn:aws:lambda:REGION:ACCOUNT:layer:lambdacov-python312-x86_64:N"
  type        = string
}

variable "coverage_bucket" {
  type = string
}

resource "aws_lambda_function" "orders_api" {
  function_name = "orders-api"
  filename      = "orders-api.zip"
  handler       = "app.handler"
  runtime       = "python3.12"
  architectures = ["x86_64"]
  memory_size   = 512
  timeout       = 30
  role          = aws_iam_role.orders_api.arn
  layers        = [var.lambdacov_layer_arn]

  environment {
    variables = {
      AWS_LAMBDA_EXEC_WRAPPER = "/opt/lambdacov-wrapper"
      COVERAGE_S3_BUCKET      = var.coverage_bucket
      COVERAGE_S3_PREFIX      = "coverage/"
    }
  }
}

resource "aws_iam_role" "orders_api" {
  name = "orders-api"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "lambdacov" {
  name = "lambdacov-orders-api"
  role = aws_iam_role.orders_api.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = "s3:PutObject"
        Resource = "arn:aws:s3:::${var.coverage_bucket}/coverage/*"
      },
      {
        # A HEAD before each source snapshot, so a version already uploaded is not sent again.
        Effect   = "Allow"
        Action   = "s3:GetObject"
        Resource = "arn:aws:s3:::${var.coverage_bucket}/coverage/sources/*"
      },
    ]
  })
}
