"""s3nas.latency"""
