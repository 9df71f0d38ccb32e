"""Layers: ``nn.Module``s with Keras names and lazy input shapes.

Image layers are channels-first, (N, C, H, W), as in PyTorch, unless ``data_format="channels_last"``
or ``deepzen.config.set_image_data_format("channels_last")`` says otherwise; sequence layers are
batch-first, (N, T, F), as in Keras. Keras 1/2 argument spellings are converted by ``layers.legacy``.
"""

from deepzen.layers.activation import ELU, LeakyReLU, PReLU, ReLU, Softmax
from deepzen.layers.attention import (AdditiveAttention, Attention, MultiHeadAttention,
                                      ScaledDotProductAttention)
from deepzen.layers.base import Layer
from deepzen.layers.conv import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3D, Conv3DTranspose,
                                 DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D)
from deepzen.layers.conv_lstm import ConvLSTM2D
from deepzen.layers.core import Activation, Dense, Dropout, Flatten, Reshape
from deepzen.layers.crf import CRF, CRFLoss, allowed_transitions
from deepzen.layers.embedding import Embedding
from deepzen.layers.input_layer import Input, InputLayer
from deepzen.layers.lambda_layer import Identity, Lambda, register_lambda
from deepzen.layers.conv import (AtrousConvolution1D, AtrousConvolution2D, Convolution1D, Convolution2D,
                                    Convolution3D, Deconvolution2D)
from deepzen.layers.masking import Masking
from deepzen.layers.merge import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add, average,
                                  concatenate, dot, maximum, minimum, multiply, subtract)
from deepzen.layers.normalization import (BatchNormalization, GroupNormalization, LayerNormalization,
                                          SpectralNormalization, UnitNormalization)
from deepzen.layers.pooling import (AveragePooling1D, AveragePooling2D, AveragePooling3D, GlobalAveragePooling1D,
                                    GlobalAveragePooling2D, GlobalAveragePooling3D, GlobalMaxPooling1D,
                                    GlobalMaxPooling2D, GlobalMaxPooling3D, MaxPooling1D, MaxPooling2D, MaxPooling3D,
                                    UpSampling1D, UpSampling2D, UpSampling3D, ZeroPadding1D, ZeroPadding2D,
                                    ZeroPadding3D)
from deepzen.layers.preprocessing import CategoryEncoding, Normalization, Rescaling
from deepzen.layers.reshaping import Cropping1D, Cropping2D, Cropping3D, Permute, RepeatVector
from deepzen.layers.regularization import (ActivityRegularization, GaussianDropout, GaussianNoise,
                                           SpatialDropout1D, SpatialDropout2D, SpatialDropout3D)
from deepzen.layers.rnn import RNN, GRUCell, LSTMCell, SimpleRNNCell, StackedRNNCells
from deepzen.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN
from deepzen.layers.text_preprocessing import StringLookup, TextVectorization
from deepzen.layers.torch_module import TorchModuleWrapper
from deepzen.layers.wrappers import TimeDistributed
from deepzen.layers.transformer import (LearnedPositionalEmbedding, PositionalEncoding, TransformerDecoder,
                                        TransformerDecoderLayer, TransformerEncoder, TransformerEncoderLayer)

LuongAttention = Attention
