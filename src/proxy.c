/* SPDX-License-Identifier: MIT */ /* placeholder: being written */ typedef int sr_placeholder_proxy;
