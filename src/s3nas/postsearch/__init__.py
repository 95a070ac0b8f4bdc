"""The paper's third step: compound scaling, SE/h-swish post-processing, selective SE removal, the flow table."""
