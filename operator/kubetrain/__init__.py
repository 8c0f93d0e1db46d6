"""kubetrain: gang-scheduled, spot-resilient distributed training on Amazon EKS."""
