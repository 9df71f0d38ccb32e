"""Computer vision: image models (LeNet-5 ... ResNeXt, MobileNet), image tasks and transfer learning."""
