"""The zoo's catalogue: networks a user would otherwise pick, their timm definitions, official resolutions and
published ImageNet top-1 with its source (data only; ``s3nas.baselines.zoo`` simulates them, the search's front
overlays them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# Sources of the published top-1 values (FP32, ImageNet val, single crop, as the authors published them).
EFFNET = "Tan & Le, EfficientNet (ICML 2019, arXiv:1905.11946v1-v3), Table 2; S3NAS Table 6 quotes it"
EFFNET_B0 = "Tan & Le, EfficientNet (ICML 2019, arXiv:1905.11946v1-v3), Table 2"
LITE = "tensorflow/tpu models/official/efficientnet/lite/README.md (FP32 accuracy)"
LITE_S3NAS = LITE + "; S3NAS Table 6 quotes it"
EDGETPU = ("S3NAS Table 6, quoting Gupta et al. [9] (EfficientNet-EdgeTPU, tensorflow/tpu "
           "models/official/efficientnet/edgetpu; FP32)")
MBV2 = "Sandler et al., MobileNetV2 (CVPR 2018), Table 4"
MBV3 = "Howard et al., Searching for MobileNetV3 (ICCV 2019), Table 3"
MIXNET = "Tan & Le, MixConv (BMVC 2019, arXiv:1907.09595), ImageNet results"
RESNET = "torchvision model card ResNet50_Weights.IMAGENET1K_V1 (acc@1); the paper reports 10-crop only"
INCEPTION = "Szegedy et al., Rethinking the Inception Architecture (CVPR 2016), 21.2% single-crop top-1 error; S3NAS Table 6 quotes it"


@dataclass(frozen=True)
class ZooEntry:
    """One zoo network: timm definition, official resolution, published top-1 (None: not stated)."""

    key: str
    display: str
    timm_name: str
    input_size: int
    published_top1: Optional[float]
    top1_source: str
    paper_midap_ms: Optional[float] = None  # S3NAS paper Table 6 (MIDAP cycle-accurate simulator)


ZOO: tuple[ZooEntry, ...] = (
    ZooEntry("efficientnet_b0", "EfficientNet-B0", "efficientnet_b0", 224, 76.3, EFFNET_B0),
    ZooEntry("efficientnet_b1", "EfficientNet-B1", "efficientnet_b1", 240, 78.8, EFFNET, 2.47),
    ZooEntry("efficientnet_b2", "EfficientNet-B2", "efficientnet_b2", 260, 79.8, EFFNET, 3.31),
    ZooEntry("efficientnet_b3", "EfficientNet-B3", "efficientnet_b3", 300, 81.1,
             EFFNET.replace("quotes it", "prints 81.0"), 5.22),
    ZooEntry("efficientnet_b4", "EfficientNet-B4", "efficientnet_b4", 380, 82.6, EFFNET, 11.42),
    ZooEntry("efficientnet_lite0", "EfficientNet-lite0", "efficientnet_lite0", 224, 75.1, LITE),
    ZooEntry("efficientnet_lite1", "EfficientNet-lite1", "efficientnet_lite1", 240, 76.7, LITE),
    ZooEntry("efficientnet_lite2", "EfficientNet-lite2", "efficientnet_lite2", 260, 77.6, LITE_S3NAS, 2.51),
    ZooEntry("efficientnet_lite3", "EfficientNet-lite3", "efficientnet_lite3", 280, 79.8, LITE_S3NAS, 3.50),
    ZooEntry("efficientnet_lite4", "EfficientNet-lite4", "efficientnet_lite4", 300, 81.5, LITE_S3NAS, 5.84),
    ZooEntry("efficientnet_es", "EfficientNet-EdgeTPU-S", "efficientnet_es", 224, 77.23, EDGETPU, 4.41),
    ZooEntry("efficientnet_em", "EfficientNet-EdgeTPU-M", "efficientnet_em", 240, 78.69, EDGETPU, 6.86),
    ZooEntry("efficientnet_el", "EfficientNet-EdgeTPU-L", "efficientnet_el", 300, 80.62, EDGETPU, 15.55),
    ZooEntry("mobilenetv2_100", "MobileNetV2", "mobilenetv2_100", 224, 72.0, MBV2),
    ZooEntry("mobilenetv3_large_100", "MobileNetV3-Large", "mobilenetv3_large_100", 224, 75.2, MBV3),
    ZooEntry("mixnet_s", "MixNet-S", "mixnet_s", 224, 75.8, MIXNET),
    ZooEntry("mixnet_m", "MixNet-M", "mixnet_m", 224, 77.0, MIXNET),
    ZooEntry("mixnet_l", "MixNet-L", "mixnet_l", 224, 78.9, MIXNET),
    ZooEntry("resnet50", "ResNet-50", "resnet50", 224, 76.13, RESNET),
    ZooEntry("inception_v3", "Inception V3", "inception_v3", 299, 78.8, INCEPTION, 6.75),
)
ZOO_BY_KEY = {entry.key: entry for entry in ZOO}

