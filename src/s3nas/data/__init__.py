"""s3nas.data"""
