"""COCO keypoint evaluation: the original val.py path (scales, flip), COCOeval, subsets, ground-truth ceiling."""
