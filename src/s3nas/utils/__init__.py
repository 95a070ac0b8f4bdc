"""s3nas.utils"""
