"""s3nas.search"""
