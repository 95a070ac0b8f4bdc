"""s3nas.nn"""
