module github.com/vklora/vklora

go 1.22

require (
	github.com/stretchr/testify v1.11.1
	github.com/x448/float16 v0.8.4
)

require (
	github.com/davecgh/go-spew v1.1.1 // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
	github.com/vulkan-go/vulkan v0.0.0-20221209234627-c0a353ae26c8 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
