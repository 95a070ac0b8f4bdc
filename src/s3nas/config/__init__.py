"""s3nas.config"""
